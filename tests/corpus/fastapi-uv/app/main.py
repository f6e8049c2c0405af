from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import select

from app.db import Note, SessionLocal

app = FastAPI(title="notes-api")


class NoteIn(BaseModel):
    text: str


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/items", status_code=201)
def create_note(note: NoteIn) -> dict[str, object]:
    with SessionLocal() as session:
        row = Note(text=note.text)
        session.add(row)
        session.commit()
        return {"id": row.id, "text": row.text}


@app.get("/items")
def list_notes() -> list[dict[str, object]]:
    with SessionLocal() as session:
        return [{"id": n.id, "text": n.text} for n in session.scalars(select(Note))]
