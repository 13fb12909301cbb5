% All men are mortal; Socrates is a man; so Socrates is mortal.
fof(all_men_mortal, axiom, ![X]: (man(X) => mortal(X))).
fof(socrates_man, axiom, man(socrates)).
fof(socrates_mortal, conjecture, mortal(socrates)).
