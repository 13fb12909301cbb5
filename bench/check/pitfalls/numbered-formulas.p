% expected: proved
% Formulas named by numbers: names, not numbers as terms.
cnf(1, axiom, p(a)).
cnf(2, axiom, ~ p(X) | q(X)).
cnf(3, negated_conjecture, ~ q(a)).
