; Three integers strictly between 0 and 3 cannot be pairwise distinct.
(set-logic QF_LIA)
(declare-const a Int)
(declare-const b Int)
(declare-const c Int)
(assert (and (> a 0) (< a 3) (> b 0) (< b 3) (> c 0) (< c 3)))
(assert (distinct a b c))
(check-sat)
