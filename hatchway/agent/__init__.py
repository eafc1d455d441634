"""The Hatchway agent: registers a machine, keeps a control channel open, runs sessions."""
