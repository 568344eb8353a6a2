"""The activator: the Service's answer while a scaled-to-zero Gemma4Deployment has no replica (a shell
component, `gemma4-operator activator`, run from the operator's image; see ``server``)."""
