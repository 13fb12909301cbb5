; expected: refuted
(set-logic QF_BV)
(declare-const a (_ BitVec 8))
(declare-const b (_ BitVec 8))
(assert (= (bvadd a b) #x10))
(assert (bvult a #x05))
(check-sat)
(exit)
