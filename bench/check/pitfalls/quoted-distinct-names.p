% expected: refuted
% 'A b' and 'A c' are two constants; nothing makes them equal, so the conjecture does not follow.
fof(a, axiom, p('A b')).
fof(b, conjecture, p('A c')).
