from counter import create_app

app = create_app()
