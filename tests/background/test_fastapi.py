"""A FastAPI view that saves a SQLAlchemy model and publishes after commit, with FastAPI's
test client, on SQLite and PostgreSQL, sync (``Session``) and async (``AsyncSession``): a
real WebSocket subscriber on soketi receives each committed event, and nothing of a
rolled-back one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from bg_support import Subscriber, postgres_url, unique
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from soketi_server import SoketiServer
from sqlalchemy import String, create_engine, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from broadcasting import Broadcast


def order_model(table: str) -> tuple[type[DeclarativeBase], Any]:
    class Base(DeclarativeBase):
        pass

    class Order(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(primary_key=True)
        item: Mapped[str] = mapped_column(String(50))

    return Base, Order


def make_app(
    broadcast: Broadcast, channel: str, sync_url: str, async_url: str, order: Any
) -> FastAPI:
    """The application: one route per session kind; ``item=broken`` fails after the publish."""
    engine = create_engine(sync_url)
    async_engine = create_async_engine(async_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await async_engine.dispose()  # on the loop its connections belong to
        engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders")
    def create_order(item: str) -> dict[str, Any]:
        with Session(engine) as session, session.begin():
            saved = order(item=item)
            session.add(saved)
            session.flush()
            order_id = saved.id
            receipt = broadcast.channel(
                channel,
                {"id": order_id, "item": item},
                "created",
                send="after_commit",
                transaction=session,
            )
            if item == "broken":
                raise HTTPException(409, "cannot ship a broken item")  # rolls back
        return {"id": order_id, "pending": receipt.pending}

    @app.post("/async/orders")
    async def acreate_order(item: str) -> dict[str, Any]:
        async with AsyncSession(async_engine) as session, session.begin():
            saved = order(item=item)
            session.add(saved)
            await session.flush()
            order_id = saved.id
            receipt = await broadcast.achannel(
                channel,
                {"id": order_id, "item": item},
                "created",
                send="after_commit",
                transaction=session,
            )
            if item == "broken":
                raise HTTPException(409, "cannot ship a broken item")
        return {"id": order_id, "pending": receipt.pending}

    return app


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        path = tmp_path / "shop.sqlite3"
        return f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"
    url = postgres_url()
    return url, url


@pytest.fixture
def shop(
    soketi: SoketiServer, urls: tuple[str, str]
) -> Iterator[tuple[TestClient, Subscriber, Any, Any]]:
    channel = f"orders-{uuid.uuid4().hex[:8]}"
    base, order = order_model(unique("shop_orders"))
    setup = create_engine(urls[0])
    base.metadata.create_all(setup)
    subscriber = Subscriber(soketi, channel)
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options()}}
    try:
        with Broadcast(config) as broadcast:
            app = make_app(broadcast, channel, *urls, order)
            with TestClient(app) as client:
                yield client, subscriber, setup, order
    finally:
        subscriber.close()
        base.metadata.drop_all(setup)
        setup.dispose()


@pytest.mark.parametrize("route", ["/orders", "/async/orders"])
def test_commit_delivers_rollback_does_not(
    shop: tuple[TestClient, Subscriber, Any, Any], route: str
) -> None:
    client, subscriber, engine, order = shop
    refused = client.post(route, params={"item": "broken"})
    assert refused.status_code == 409
    answer = client.post(route, params={"item": "mug"})
    assert answer.status_code == 200 and answer.json()["pending"] is True
    # sent once committed (a task on the app's loop for the async route): wait for it
    assert subscriber.next_data() == {"id": answer.json()["id"], "item": "mug"}
    assert subscriber.rest() == []  # nothing of the rolled-back order, nothing twice
    with Session(engine) as session:
        assert session.scalars(select(order.item)).all() == ["mug"]
