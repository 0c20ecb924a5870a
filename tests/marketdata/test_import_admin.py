"""manage.py import_candles (row validation, idempotency, roll-up) and the candle admin pages."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command

from marketdata import selectors


def _run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("import_candles", *args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_reports_bad_rows_by_line_and_loads_the_rest_once(coins, t0, tmp_path):
    epoch = int(t0.timestamp())
    lines = [
        "time,open,high,low,close,volume",
        f"{t0.isoformat()},10,12,9,11,5",  # line 2: ISO 8601
        f"{epoch + 60},11,13,10,12,",  # line 3: unix seconds, no volume
        f"{epoch + 120},11,10,9,12,1",  # line 4: high below close
        f"{epoch + 150},11,13,10,12,1",  # line 5: not a minute start
        "yesterday,1,1,1,1,1",  # line 6: bad time
        f"{epoch + 180},abc,1,1,1,1",  # line 7: not a number
        f"{epoch + 240},1,1,1,1,-3",  # line 8: negative volume
        f"{(t0 + timedelta(minutes=5)).strftime('%Y-%m-%dT%H:%M:%SZ')},12,12,12,12,2",  # line 9: Z suffix
    ]
    path = tmp_path / "candles.csv"
    path.write_text("\n".join(lines) + "\n")
    out, err = _run("--coin", "coin-0", "--timeframe", "1m", str(path))
    for line in (4, 5, 6, 7, 8):
        assert f"line {line}:" in err
    assert "line 2:" not in err and "line 3:" not in err and "line 9:" not in err
    assert "3 inserted" in out and "5 rejected" in out
    rows = selectors.candles_range(coin_id=coins[0], timeframe="1m", newest_first=False)
    assert [r[0] for r in rows] == [t0, t0 + timedelta(minutes=1), t0 + timedelta(minutes=5)]
    assert rows[0][5] == 5.0 and rows[1][5] is None  # volume traded, or null when absent
    # rolled up: the 5m bucket at t0 sums the traded volume of its minutes (null minute ignored)
    five = selectors.candles_range(coin_id=coins[0], timeframe="5m", newest_first=False)
    assert five[0][0] == t0 and five[0][1:6] == (10.0, 13.0, 9.0, 12.0, 5.0)

    out2, _ = _run("--coin", "coin-0", "--timeframe", "1m", str(path))
    assert "0 inserted, 0 updated, 3 unchanged" in out2


def test_import_refuses_unknown_coin_and_missing_columns(coins, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("time,open,close\n")
    with pytest.raises(CommandError, match="unknown coin"):
        _run("--coin", "nope", "--timeframe", "1m", str(path))
    with pytest.raises(CommandError, match="lacks column"):
        _run("--coin", "coin-0", "--timeframe", "1m", str(path))


def test_candle_admin_lists_with_filters(coins, t0, tmp_path, admin_client):
    path = tmp_path / "candles.csv"
    path.write_text(f"time,open,high,low,close,volume\n{t0.isoformat()},1,2,0.5,1.5,3\n")
    _run("--coin", "coin-0", "--timeframe", "1m", str(path))
    url = "/admin/marketdata/candlelisting/"
    response = admin_client.get(url, {"coin": coins[0], "timeframe__exact": "1m"})
    assert response.status_code == 200
    assert b"1.5" in response.content
    assert admin_client.get(url).status_code == 200  # unfiltered: last hours only, no full count
    assert admin_client.get("/admin/marketdata/coin/").status_code == 200
    assert admin_client.get("/admin/marketdata/marketsnapshot/").status_code == 200
