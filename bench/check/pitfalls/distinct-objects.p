% expected: proved
% Distinct objects ("...") are unequal by definition. SPASS rejects them.
fof(a, axiom, p("apple")).
fof(b, axiom, ![X]: (p(X) => X = "pear")).
