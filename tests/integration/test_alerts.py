"""Alerts reach a real webhook on loopback (Apprise's json://) from a real daemon and from the
CLI with the daemon down, and a receiver that hangs or refuses holds up no candle and no flatten."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.conftest import eventually
from tests.integration.alert_receiver import AlertReceiver, refusing_url
from tests.integration.daemon_process import DaemonProcess
from tests.store_under_test import current

MakeDaemon = Callable[..., DaemonProcess]
BOT = "eth-ema"
BTC_BOT = """
[bots.btc-ema]
account = "paper"
symbol = "BTC/USDT:USDT"
strategy = "ema_cross"
timeframes = ["1m", "5m"]
autostart = true
leverage = 3
"""


def alerts_to(*urls: str) -> str:
    return "[alerts]\nurls = [" + ", ".join(json.dumps(u) for u in urls) + "]\n"


def test_a_loss_limit_halt_and_the_flatten_after_it_are_alerted(make_daemon: MakeDaemon) -> None:
    with AlertReceiver() as receiver:
        daemon = make_daemon(alerts_to(receiver.url()), speed=0)
        text = daemon.config.read_text().replace(
            "daily_loss_limit_usdt = 20", "daily_loss_limit_usdt = 0.3"
        )
        daemon.config.write_text(text)
        daemon.start()
        eventually(lambda: daemon.bot(BOT)["state"] == "halted", timeout=90)
        [halt] = eventually(lambda: receiver.saying(f"{BOT} halted", "daily loss limit"))
        assert "tradectl resume" in halt
        [flatten] = eventually(lambda: receiver.saying("flatten of eth-ema", "the daemon"))
        assert "through the daemon" in flatten and "everything flat" in flatten, flatten
        assert receiver.received[0]["type"] == "failure", "a halt is sent as critical"


def test_a_flatten_through_the_daemon_and_a_direct_one_with_it_down_are_alerted(
    make_daemon: MakeDaemon,
) -> None:
    with AlertReceiver() as receiver:
        daemon = make_daemon(alerts_to(receiver.url()), speed=300).start()
        eventually(lambda: daemon.bot(BOT)["state"] == "running", timeout=60)
        result = daemon.cli("flatten", BOT, "--yes", "--json")
        assert result.returncode == 0, result.stderr
        [through] = eventually(lambda: receiver.saying("flatten of eth-ema", "through the daemon"))
        assert "asked by" in through and "everything flat" in through
        assert "ETH/USDT:USDT" in through

        daemon.stop()
        result = daemon.cli("flatten", "--all", "--yes", "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["direct"] is True
        assert [d["ok"] for d in report["alerts"]] == [True], report["alerts"]
        [direct] = receiver.saying("directly against the exchanges")
        assert "from the command line" in direct and "eth-ema" in direct


@pytest.mark.sqlite_only("two bots share one paper account: a fleet refuses it, see README")
def test_a_hanging_or_refusing_receiver_holds_up_neither_candles_nor_a_flatten(
    make_daemon: MakeDaemon,
) -> None:
    with AlertReceiver(hang_s=60) as hanging:
        daemon = make_daemon(alerts_to(hanging.url(), refusing_url()), speed=600)
        text = daemon.config.read_text().replace(
            "max_position_usdt = 50", "max_position_usdt = 150"
        )
        daemon.config.write_text(text + BTC_BOT)
        daemon.start()
        eventually(lambda: daemon.bot("btc-ema")["candles_processed"] > 20, timeout=60)
        began = time.monotonic()
        result = daemon.cli("flatten", BOT, "--yes", "--json")
        took = time.monotonic() - began
        assert result.returncode == 0, result.stderr
        assert took < 10, f"the flatten took {took:.1f} s"
        before = daemon.bot("btc-ema")["candles_processed"]
        time.sleep(3)  # the alert of the flatten hangs at the receiver all this while
        after = daemon.bot("btc-ema")["candles_processed"]
        assert after - before >= 10, f"{after - before} candles in 3 s while the alert hangs"
        health = daemon.cli_json("health")
        assert health["loop_lag_s"] < 1.0, health
        failed = eventually(lambda: daemon.cli_json("status") and _journal(daemon), timeout=40)
        assert "refused" in failed, "the refused delivery is journalled, naming its target"


def test_alerts_test_reports_each_delivery_with_the_daemon_up_and_down(
    make_daemon: MakeDaemon,
) -> None:
    with AlertReceiver() as receiver:
        refused = refusing_url()
        daemon = make_daemon(alerts_to(receiver.url(), refused)).start()
        result = daemon.cli("alerts", "test", "--json")
        assert result.returncode == 1, "one target refused: exit 1"
        report = json.loads(result.stdout)
        assert report["via"] == "daemon"
        assert sorted(d["ok"] for d in report["deliveries"]) == [False, True]
        assert len(receiver.saying("test alert")) == 1
        daemon.stop()
        result = daemon.cli("alerts", "test", "--json")
        report = json.loads(result.stdout)
        assert report["via"] == "direct" and len(report["deliveries"]) == 2
        assert len(receiver.saying("test alert")) == 2


def test_a_start_after_a_kill_is_alerted_as_unclean(make_daemon: MakeDaemon) -> None:
    import signal

    with AlertReceiver() as receiver:
        daemon = make_daemon(alerts_to(receiver.url())).start()
        daemon.stop()
        daemon.start()
        assert receiver.saying("unclean") == [], "a clean stop is not an unclean end"
        daemon.signal(signal.SIGKILL)
        daemon.wait()
        daemon.start()
        [alert] = eventually(lambda: receiver.saying("unclean end"))
        assert "a crash, a kill or the watchdog" in alert


def _journal(daemon: DaemonProcess) -> str | None:
    """The journal's alert_delivery_failed entries, once there are any."""
    rows = current().query(
        daemon.state_dir, "SELECT data FROM events WHERE kind = 'alert_delivery_failed'"
    )
    return "\n".join(r[0] for r in rows) or None


def test_a_rollover_missed_while_down_reports_the_day_once_at_start(
    make_daemon: MakeDaemon,
) -> None:
    from datetime import UTC, datetime, timedelta

    with AlertReceiver() as receiver:
        daemon = make_daemon(alerts_to(receiver.url())).start()
        daemon.stop()
        long_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
        current().query(daemon.state_dir, "DELETE FROM duty_runs WHERE name = 'rollover'")
        current().query(
            daemon.state_dir, "INSERT INTO duty_runs VALUES ('rollover', ?)", (long_ago,)
        )
        daemon.start()
        yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        [report] = eventually(lambda: receiver.saying("daily report", yesterday))
        assert "bot eth-ema: pnl" in report and "account paper: pnl" in report
        assert "max drawdown" in report and "funding 0)" in report
        jobs = {j["name"]: j for j in daemon.cli_json("schedule")["jobs"]}
        assert jobs["rollover"]["last_run_utc"] > long_ago
        assert "drift:paper" not in jobs, "a paper account has no exchange to drift from"
        time.sleep(1)
        assert len(receiver.saying("daily report")) == 1, "coalesced: one run, not two"
