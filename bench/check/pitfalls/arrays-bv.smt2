; expected: proved
(set-logic QF_ABV)
(declare-fun m () (Array (_ BitVec 4) (_ BitVec 8)))
(assert (not (= (select (store m #x1 #x05) #x1) #x05)))
(check-sat)
(exit)
