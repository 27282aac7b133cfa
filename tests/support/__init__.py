"""Helpers shared by the tests (not tests themselves): images, a loopback server, the family references,
and the scripts that the Spark tests run in their own process."""
