% expected: proved
% Typed, without arithmetic: E reads it.
tff(f_type, type, f: $i > $i).
tff(a, axiom, ![X: $i]: f(X) = X).
tff(c, conjecture, ![X: $i]: f(f(X)) = X).
