; expected: refuted
; A model with elements of an uninterpreted sort, functions and reals: checked by the other solver.
(set-logic QF_UFLRA)
(declare-sort U 0)
(declare-fun f (U) Real)
(declare-const a U)
(declare-const b U)
(assert (distinct a b))
(assert (> (f a) (f b)))
(assert (> (f b) 0.5))
(check-sat)
