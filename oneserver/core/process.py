"""The core process: holds the lease, runs driver operations, monitors hosts and schedules
VMs. Periodic jobs run on APScheduler; a signal from an API worker runs them at once, so work
never waits for an interval (the interval is only the upper bound)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler

from oneserver import db, settings, wakeup
from oneserver.core import lease
from oneserver.core.executor import Executor
from oneserver.core.monitor import Monitor
from oneserver.core.progress import Progress
from oneserver.core.registry import Registry
from oneserver.core.scheduling import SchedConf, Scheduler

log = logging.getLogger("oneserver.core")
LEASE_SECONDS = 15.0
POLL_SECONDS = 1.0  # fallback when a wake-up datagram is lost


class Core:
    def __init__(self, conf: settings.Settings, sched: SchedConf | None = None,
                 monitor_interval: float | None = None) -> None:
        self.conf = conf
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.registry = Registry(conf.oned_conf)
        self.registry.progress_sink = Progress()
        self.executor = Executor(self.registry, self.kick)
        if monitor_interval is None:
            monitor_interval = conf.conf_int("MONITORING_INTERVAL_HOST", 60)
        self.monitor = Monitor(self.registry, monitor_interval)
        self.scheduler = Scheduler(sched or SchedConf.from_template(conf.sched_conf))
        self.jobs = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        self.active = False
        self._stop = threading.Event()
        self._kicked = threading.Event()

    def kick(self) -> None:
        """Ask for an immediate round (work finished or arrived)."""
        self._kicked.set()

    def _round(self) -> None:
        if not self.active:
            return
        self.executor.dispatch()
        self.monitor.due()
        if self.scheduler.conf.wake_on_events:
            self.jobs.modify_job("schedule", next_run_time=datetime.now())

    def _schedule(self) -> None:
        if self.active:
            try:
                if self.scheduler.run_pass():
                    self.kick()
            except Exception:  # noqa: BLE001 - a bad pass must not stop the job
                log.exception("scheduling pass failed")

    def _renew(self) -> None:
        was = self.active
        self.active = lease.acquire(self.holder, LEASE_SECONDS)
        if self.active and not was:
            log.info("core %s is active", self.holder)
            self.executor.recover()
            self.kick()

    def run(self) -> None:
        try:
            listener: wakeup.Listener | None = wakeup.Listener(self.conf.wakeup_socket)
        except OSError as exc:  # another core of this data dir holds it: poll only
            log.warning("no wake-up socket (%s); polling every %s s", exc, POLL_SECONDS)
            listener = None
        self.jobs.add_job(self._renew, "interval", seconds=LEASE_SECONDS / 3, id="lease",
                          next_run_time=datetime.now())
        self.jobs.add_job(self._schedule, "interval", seconds=self.scheduler.conf.interval,
                          id="schedule")
        self.jobs.start()
        if listener is not None:
            threading.Thread(target=self._listen, args=(listener,), daemon=True).start()
        try:
            while not self._stop.is_set():
                self._kicked.wait(POLL_SECONDS)
                self._kicked.clear()
                try:
                    self._round()
                except Exception:  # noqa: BLE001 - database hiccup: try next round
                    log.exception("core round failed")
        finally:
            self.jobs.shutdown(wait=False)
            self.executor.close()
            self.registry.close()
            lease.release(self.holder)
            if listener is not None:
                listener.close()

    def _listen(self, listener: wakeup.Listener) -> None:
        while not self._stop.is_set():
            if listener.wait(5.0):
                self.kick()

    def stop(self, *_: object) -> None:
        self._stop.set()
        self._kicked.set()


def main(data_dir: str, db_url: str | None, sched: SchedConf | None = None,
         monitor_interval: float | None = None, etc_dir: str | None = None) -> None:
    conf = settings.configure(data_dir, db_url, etc_dir)
    db.open_database(conf.db_url)
    from oneserver import api
    api.load_all()
    core = Core(conf, sched, monitor_interval)
    signal.signal(signal.SIGTERM, core.stop)
    signal.signal(signal.SIGINT, core.stop)
    core.run()
