% expected: proved
tff(f_type, type, f: $int > $int).
tff(f_def, axiom, ![X: $int]: f(X) = $sum(X, 1)).
tff(c, conjecture, ![X: $int]: $greater(f(X), X)).
