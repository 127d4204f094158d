"""The code that loops, polls, sleeps and starts threads: deciders, activity workers, timers."""
