% expected: proved
% Typed first-order logic with integer arithmetic: E gives up, SPASS cannot parse it.
tff(c, conjecture, $less(2, 3)).
