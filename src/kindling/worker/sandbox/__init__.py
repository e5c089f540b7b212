"""Sandbox backends behind one Protocol, and the safety wrapper every backend goes through."""
