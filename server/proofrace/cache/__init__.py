"""The verdict cache: keys that say when two requests ask the same question, entries that hold
a decisive answer with its grounds, and stores that keep them (SQLite embedded, Redis shared)."""
