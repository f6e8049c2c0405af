"""Kubernetes output: the app's objects from headway.toml, as a kustomize base with overlays
(kustomize.py) or a Helm chart (helm.py). Writes no file and talks to no cluster itself."""
