% Being a man does not follow from being mortal.
fof(socrates_mortal, axiom, mortal(socrates)).
fof(socrates_man, conjecture, man(socrates)).
