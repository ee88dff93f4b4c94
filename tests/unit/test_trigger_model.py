"""The paper trigger model at its edges: a trigger touched exactly fires, a buy stop rises,
and only trigger orders are ever fired (whatever else rests, in whatever order)."""

from __future__ import annotations

from decimal import Decimal

from daemon.domain.models import Order, OrderStatus, OrderType, Side
from daemon.domain.paper_model import fired_triggers, trigger_hit, triggers_at

D = Decimal
STOP, TAKE, LIMIT = OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET, OrderType.LIMIT


def resting(kind: OrderType, side: Side, trigger: str | None, cid: str) -> Order:
    price = D(100) if kind is LIMIT else None
    return Order(
        "paper",
        "ETH/USDT:USDT",
        cid,
        side,
        kind,
        D(1),
        price,
        kind is not LIMIT,
        OrderStatus.OPEN,
        trigger_price=None if trigger is None else D(trigger),
    )


def test_a_trigger_touched_exactly_fires_at_the_trigger() -> None:
    assert trigger_hit(STOP, Side.SELL, D(95), D(100), D(101), D(95)) == D(95)
    assert trigger_hit(STOP, Side.BUY, D(105), D(100), D(105), D(99)) == D(105)
    assert trigger_hit(TAKE, Side.SELL, D(105), D(100), D(105), D(99)) == D(105)
    assert trigger_hit(STOP, Side.SELL, D(95), D(100), D(101), D("95.01")) is None
    assert trigger_hit(STOP, Side.BUY, D(105), D(100), D("104.99"), D(99)) is None


def test_a_price_exactly_at_the_trigger_would_fire_a_new_order_on_either_side() -> None:
    assert triggers_at(STOP, Side.BUY, D(105), D(105))
    assert not triggers_at(STOP, Side.BUY, D(105), D("104.99"))
    assert triggers_at(STOP, Side.SELL, D(95), D(95))
    assert triggers_at(TAKE, Side.SELL, D(105), D(105))
    assert not triggers_at(TAKE, Side.BUY, D(95), D("95.01"))


def test_only_trigger_orders_fire_whatever_rests_before_them() -> None:
    limit_first = [
        resting(LIMIT, Side.SELL, None, "limit"),
        resting(LIMIT, Side.SELL, "95", "limit-with-a-trigger-price"),
        resting(STOP, Side.SELL, "95", "stop"),
    ]
    fired = fired_triggers(limit_first, D(100), D(101), D(94))
    assert [(o.client_order_id, price) for o, price in fired] == [("stop", D(95))]
    # Without a stop among them (stops win over everything else), the take-profit alone.
    take_profit_last = [*limit_first[:2], resting(TAKE, Side.SELL, "105", "take-profit")]
    fired = fired_triggers(take_profit_last, D(100), D(106), D(94))
    assert [(o.client_order_id, price) for o, price in fired] == [("take-profit", D(105))]


def test_a_buy_stop_fires_on_the_rise_at_its_trigger() -> None:
    [(order, price)] = fired_triggers(
        [resting(STOP, Side.BUY, "105", "buy-stop")], D(100), D(106), D(99)
    )
    assert (order.client_order_id, price) == ("buy-stop", D(105))
