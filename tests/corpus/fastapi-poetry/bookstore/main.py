from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy.orm import Session

from bookstore import models
from bookstore.database import SessionLocal, engine

models.Base.metadata.create_all(bind=engine)

app = FastAPI()


class BookIn(BaseModel):
    text: str


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


@app.get("/")
def root() -> dict[str, str]:
    return {"service": "bookstore"}


@app.post("/items", status_code=201)
def create_book(book: BookIn, db: Annotated[Session, Depends(get_db)]) -> dict[str, object]:
    row = models.Book(title=book.text)
    db.add(row)
    db.commit()
    db.refresh(row)
    return {"id": row.id, "text": row.title}


@app.get("/items")
def read_books(db: Annotated[Session, Depends(get_db)]) -> list[dict[str, object]]:
    return [{"id": b.id, "text": b.title} for b in db.query(models.Book).all()]
