"""The web dashboard the agent serves at / of its metrics address when [observe] dashboard is
on: what runs, live (views), drawn as HTML and SVG (pages), and three token-guarded actions
(actions). Never shows a secret value, and never changes anything without the token."""
