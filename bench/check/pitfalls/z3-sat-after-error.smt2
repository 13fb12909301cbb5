; expected: proved
; z3 4.8 cannot read str.to_lower: it prints an error, then `sat` about what is left. That
; answer does not count; cvc5 reads the problem and proves it.
(set-logic ALL)
(declare-const x Int)
(assert (> x 0))
(assert (= (str.to_lower "A") "B"))
(check-sat)
