"""Qt plumbing under every widget: jobs on the thread pool, latest-wins runners, the one image -> QImage
converter, the application context, settings and the one model-loading job."""
