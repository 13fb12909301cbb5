% expected: proved
% Distinct numbers are unequal in TPTP. SPASS takes 1 and 2 for ordinary constants that may be
% equal and reports a completion; it is not raced on problems with numbers.
fof(a, axiom, p(1)).
fof(b, axiom, ![X]: (p(X) => X = 2)).
