% expected: refuted
tff(c, conjecture, $less(3, 2)).
