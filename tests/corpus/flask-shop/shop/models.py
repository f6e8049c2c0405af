from shop import db


class Product(db.Model):  # type: ignore[name-defined]
    __tablename__ = "products"

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(200), nullable=False)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "text": self.name}
