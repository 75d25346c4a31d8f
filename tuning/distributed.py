"""KerasTuner's chief/worker search, made robust to workers that die mid-trial.

KerasTuner's own distributed mode (one chief process serving the oracle over
gRPC, workers asking it for trials; configured by `KERASTUNER_TUNER_ID`,
`KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`) keeps a trial "ongoing"
forever when its worker is killed: the trial is never finished and the chief
never exits. This chief adds leases: workers send a heartbeat while they run
a trial (`Heartbeat`), and a trial whose worker has been silent for
`lease_seconds` goes back to the oracle's retry queue, to be run by another
worker. Workers that find no new trial while others still hold one wait
(IDLE) instead of exiting, so a requeued trial always has someone to run it.

Security: the chief listens, without encryption or authentication, on exactly
the address it is given (KerasTuner's gRPC protocol has neither). Anyone who
can reach that port can read the search and report trial results: run it on
a trusted network only, and give it a private address (never 0.0.0.0 on a
machine reachable from the internet).
"""

import contextlib
import os
import threading
import time
from concurrent import futures

import grpc
import keras_tuner
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief
from keras_tuner.src.engine import trial as trial_module

ENV_TUNER_ID = "KERASTUNER_TUNER_ID"
ENV_ORACLE_IP = "KERASTUNER_ORACLE_IP"
ENV_ORACLE_PORT = "KERASTUNER_ORACLE_PORT"


def is_chief():
    """Whether this process is the chief of a distributed search."""
    return ENV_ORACLE_IP in os.environ and "chief" in os.environ.get(ENV_TUNER_ID, "")


def is_worker():
    """Whether this process is a worker of a distributed search."""
    return ENV_ORACLE_IP in os.environ and not is_chief()


@contextlib.contextmanager
def distributed_env(tuner_id, oracle_address):
    """Sets KerasTuner's `KERASTUNER_*` variables for the duration of a search, then restores them.

    Args:
        tuner_id: this process's id, or None to keep `$KERASTUNER_TUNER_ID`.
        oracle_address: the chief's `"host:port"`, or None to keep
            `$KERASTUNER_ORACLE_IP` / `$KERASTUNER_ORACLE_PORT`.
    """
    keys = (ENV_TUNER_ID, ENV_ORACLE_IP, ENV_ORACLE_PORT)
    saved = {key: os.environ.get(key) for key in keys}
    if oracle_address is not None:
        host, port = parse_address(oracle_address)
        os.environ[ENV_ORACLE_IP] = host
        os.environ[ENV_ORACLE_PORT] = str(port)
    if tuner_id is not None:
        os.environ[ENV_TUNER_ID] = tuner_id
    try:
        missing = [key for key in keys if key not in os.environ]
        if missing:
            raise ValueError(
                "A distributed search needs `tuner_id` and `oracle_address` (or the variables "
                f"{', '.join(keys)}). Missing: {', '.join(missing)}"
            )
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def parse_address(address):
    """`"host:port"` → `(host, port)`."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"`oracle_address` must be 'host:port'. Received: oracle_address={address!r}")
    return host, int(port)


@keras_tuner.synchronized
def _should_wait(oracle, tuner_id):
    # The search is out of new trials, but another worker still holds one
    # that may come back to the retry queue: wait rather than exit.
    if tuner_id in oracle.ongoing_trials or oracle._retry_queue:
        return False
    exhausted = oracle.max_trials is not None and len(oracle.trials) >= oracle.max_trials
    return exhausted and any(other != tuner_id for other in oracle.ongoing_trials)


@keras_tuner.synchronized
def _requeue_silent(oracle, last_seen, lease_seconds, now):
    """Sends the trials of silent workers back to the retry queue; returns their ids."""
    requeued = []
    for tuner_id, trial in list(oracle.ongoing_trials.items()):
        if now - last_seen.get(tuner_id, now) > lease_seconds:
            oracle.ongoing_trials.pop(tuner_id)
            # `_retry_queue` is where `Oracle.reload` puts interrupted trials
            # too; `create_trial` hands them out before new ones.
            oracle._retry_queue.append(trial.trial_id)
            oracle.tuner_ids.discard(tuner_id)
            requeued.append(trial.trial_id)
    for tuner_id in list(oracle.tuner_ids):
        if tuner_id not in oracle.ongoing_trials and now - last_seen.get(tuner_id, now) > lease_seconds:
            oracle.tuner_ids.discard(tuner_id)
    if requeued:
        oracle.save()
    return requeued


@keras_tuner.synchronized
def _finished(oracle):
    return not oracle.ongoing_trials and not oracle.tuner_ids


class _LeasingServicer(oracle_chief.OracleServicer):
    def __init__(self, oracle, idle_wait_seconds=0.5):
        super().__init__(oracle)
        self.last_seen = {}
        self.idle_wait_seconds = idle_wait_seconds

    def _seen_trial(self, trial_id):
        for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
            if trial.trial_id == trial_id:
                self.last_seen[tuner_id] = time.monotonic()

    def CreateTrial(self, request, context):
        self.last_seen[request.tuner_id] = time.monotonic()
        if _should_wait(self.oracle, request.tuner_id):
            time.sleep(self.idle_wait_seconds)
            trial = trial_module.Trial(self.oracle.get_space(), trial_id="idle", status=trial_module.TrialStatus.IDLE)
            return protos.get_service().CreateTrialResponse(trial=trial.to_proto())
        return super().CreateTrial(request, context)

    def GetTrial(self, request, context):
        self._seen_trial(request.trial_id)
        return super().GetTrial(request, context)

    def UpdateTrial(self, request, context):
        self._seen_trial(request.trial_id)
        return super().UpdateTrial(request, context)

    def EndTrial(self, request, context):
        self._seen_trial(request.trial.trial_id)
        return super().EndTrial(request, context)


def serve_chief(oracle, address=None, lease_seconds=60.0, poll_seconds=0.5, log=print):
    """Serves `oracle` to the workers until every trial has ended; blocks.

    Args:
        oracle: the chief's `keras_tuner.Oracle`.
        address: `"host:port"`; defaults to the `KERASTUNER_ORACLE_*` variables.
        lease_seconds: float, how long a worker holding a trial may stay
            silent before its trial is given to another worker.
        poll_seconds: float, how often leases are checked.
        log: callable for progress lines.
    """
    if address is None:
        address = f"{os.environ[ENV_ORACLE_IP]}:{os.environ[ENV_ORACLE_PORT]}"
    servicer = _LeasingServicer(oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    # Unauthenticated gRPC (KerasTuner's protocol): bound to the given address only; see the module docstring.
    if not server.add_insecure_port(address):
        raise ValueError(f"Cannot listen on the oracle address. Received: oracle_address={address!r}")
    server.start()
    log(f"Chief oracle serving on {address}")
    try:
        while True:
            time.sleep(poll_seconds)
            requeued = _requeue_silent(oracle, servicer.last_seen, lease_seconds, time.monotonic())
            if requeued:
                log(f"Workers silent for over {lease_seconds:g}s: trials {requeued} go back to the queue")
            if servicer.stop_triggered and _finished(oracle):
                break
    finally:
        server.stop(grace=2).wait()


class Heartbeat:
    """Tells the chief, every `interval` seconds, that this worker still runs `trial_id`."""

    def __init__(self, oracle, trial_id, interval=5.0):
        self.oracle = oracle
        self.trial_id = trial_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"heartbeat-{trial_id}")

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self.oracle.get_trial(self.trial_id)
            except grpc.RpcError:
                pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 1)
