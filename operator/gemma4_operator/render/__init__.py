"""Plan -> the child objects of a Gemma4Deployment (Kubernetes objects as dicts). Pure."""
