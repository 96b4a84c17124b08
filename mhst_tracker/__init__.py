"""mhst-tracker: live tracking of the four-week waiting-time standard for school MHSTs."""
