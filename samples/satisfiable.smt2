; Some integer lies strictly between 2 and 4.
(set-logic QF_LIA)
(declare-const x Int)
(assert (and (> x 2) (< x 4)))
(check-sat)
