% expected: proved
% 'C' is a constant (unquoted, C would be a variable): its quotes must stay.
fof(a, axiom, p('C')).
fof(b, conjecture, ?[X]: p(X)).
