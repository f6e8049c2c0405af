import os

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
migrate = Migrate()


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "sqlite:///shop.db")
    return url.replace("postgres://", "postgresql://", 1)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url()
    db.init_app(app)
    migrate.init_app(app, db)

    from shop import views

    app.register_blueprint(views.bp)
    return app
