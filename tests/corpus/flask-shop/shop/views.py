from flask import Blueprint, jsonify, request

from shop import db
from shop.models import Product

bp = Blueprint("shop", __name__)


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    return jsonify(shop="open")


@bp.post("/items")
def add_product():  # type: ignore[no-untyped-def]
    product = Product(name=request.get_json()["text"])
    db.session.add(product)
    db.session.commit()
    return jsonify(product.to_dict()), 201


@bp.get("/items")
def list_products():  # type: ignore[no-untyped-def]
    return jsonify([p.to_dict() for p in db.session.scalars(db.select(Product))])
