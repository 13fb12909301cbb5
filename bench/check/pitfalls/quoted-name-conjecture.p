% expected: proved
% The quoted spelling in the conjecture only.
fof(socrates, axiom, man(socrates)).
fof(mortal, axiom, ![X]: (man(X) => mortal(X))).
fof(goal, conjecture, mortal('socrates')).
