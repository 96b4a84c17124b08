"""Documents and pages for people: the monthly report (HTML, xlsx, text) and the static
dashboard page, with their charts, and screenshots of them in headless Chromium."""
