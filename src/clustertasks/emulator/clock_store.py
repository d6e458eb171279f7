"""ClockStore: the simulated clock's one row (mode, speed and its anchor), kept so that a
restarted server shows the same simulated time and mode."""

from __future__ import annotations

import sqlalchemy as sa

from clustertasks.domain import emulator
from clustertasks.storage import dialects, schema, transactions

CLOCK = schema.sim_clock
_ROW = 1


class ClockStore:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._tx = transactions.Transactions(engine, "the simulated clock's store")

    def load(self) -> emulator.ClockState | None:
        with self._tx.read() as conn:
            row = conn.execute(sa.select(CLOCK).where(CLOCK.c.clock_id == _ROW)).first()
        if row is None:
            return None
        found = row._mapping
        return emulator.ClockState(
            mode=found["mode"],
            speed=float(found["speed"]),
            sim_us=int(found["sim_us"]),
            real_us=int(found["real_us"]),
        )

    def save(self, state: emulator.ClockState) -> None:
        values = {
            "clock_id": _ROW,
            "mode": state.mode,
            "speed": state.speed,
            "sim_us": state.sim_us,
            "real_us": state.real_us,
        }
        statement = dialects.upsert(
            self._engine, CLOCK, values, ["clock_id"], ["mode", "speed", "sim_us", "real_us"]
        )
        with self._tx.write() as conn:
            conn.execute(statement)
