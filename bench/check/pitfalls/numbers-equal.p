% expected: proved
% 1.6 = 1 is false by definition: the axiom set is inconsistent.
fof(a, axiom, 1.6 = 1).
