"""The application shell: start-up, theme, the main window, and the host that builds each analysis tab."""
