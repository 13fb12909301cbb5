; expected: proved
; declare-const is declare-fun with no arguments; Boolector 1.5 reads only the second.
(set-logic QF_BV)
(declare-const a (_ BitVec 8))
(declare-const b (_ BitVec 8))
(assert (= (bvadd a b) #x10))
(assert (= a b))
(assert (= ((_ extract 0 0) a) #b1))
(check-sat)
(exit)
