% expected: proved
% 'c' and c are one symbol (TPTP: a quoted lower word is that word). E 2.6 takes them for
% two and answers Satisfiable; the service drops the quotes before racing.
fof(a, axiom, p('c')).
fof(b, axiom, ~ p(c)).
