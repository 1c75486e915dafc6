"""Drills: a press the central itself makes for a button at a scheduled time, so that the
butlers' half of the loop (paging, console, acknowledgement, escalation) is practised and
measured without a resident pressing anything."""
