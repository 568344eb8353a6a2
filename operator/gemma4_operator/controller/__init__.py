"""The shell: kopf handlers, the server-side-apply client, status from children, the scraper and autoscaler loop."""
