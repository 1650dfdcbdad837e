package request

// Packed Micheline data (magic 0x05): exactly one expression in Octez's
// binary Micheline encoding (micheline_encoding.ml; gotez
// protocol/core/expression), tag then body:
//
//	0  int            Z (zarith, signed)
//	1  string         4-byte length ‖ bytes
//	2  sequence       4-byte length ‖ expressions
//	3  prim           prim (1 byte)
//	4  prim + annots  prim ‖ annots (4-byte length ‖ bytes)
//	5  prim 1 arg     prim ‖ expression
//	6  … + annots     prim ‖ expression ‖ annots
//	7  prim 2 args    prim ‖ expression ‖ expression
//	8  … + annots     prim ‖ expression ‖ expression ‖ annots
//	9  prim n args    prim ‖ 4-byte length ‖ expressions ‖ annots
//	10 bytes          4-byte length ‖ bytes
//
// Any primitive code is accepted (gotez, which Signatory decodes with, keeps
// unknown codes as numbers); the data is signed, never run. Nothing may
// follow the expression.

// michelineTask is pending work while walking an expression without
// recursion: read an expression, read annotations, or finish a
// length-prefixed list of expressions ending at end.
type michelineTask struct {
	kind uint8
	end  int
}

const (
	taskExpr uint8 = iota
	taskAnnots
	taskList
)

// maxMichelineDepth bounds the pending work (roughly the nesting depth):
// far above any real data, and what keeps the walk's memory small whatever
// the input.
const maxMichelineDepth = 1 << 12

func parsePack(r *reader) error {
	r.ctx = "pack data"
	if err := micheline(r); err != nil {
		return err
	}
	return r.end()
}

// micheline checks one expression starting at r.off.
func micheline(r *reader) error {
	var buf [32]michelineTask
	stack := append(buf[:0], michelineTask{kind: taskExpr})
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		switch top.kind {
		case taskAnnots:
			stack = stack[:len(stack)-1]
			if err := r.skipDyn("annotations"); err != nil {
				return err
			}
			continue
		case taskList:
			if r.off == top.end {
				stack = stack[:len(stack)-1]
				continue
			}
			if r.off > top.end {
				return r.errf("%s overruns its list, which ends at offset %d (now at offset %d)", r.where("expression"), top.end, r.off)
			}
			// Another element of the list: the list stays pending.
		default:
			stack = stack[:len(stack)-1]
		}
		if len(stack) >= maxMichelineDepth {
			return r.errf("%s at offset %d is nested too deeply (more than %d pending expressions)", r.where("expression"), r.off, maxMichelineDepth)
		}
		at := r.off
		tag, err := r.u8("expression tag")
		if err != nil {
			return err
		}
		var push []uint8 // pushed in this order: the last one is read first
		switch tag {
		case 0:
			err = r.zarith("int")
		case 1:
			err = r.skipDyn("string")
		case 2:
			var end int
			if end, err = r.list("sequence"); err == nil {
				stack = append(stack, michelineTask{kind: taskList, end: end})
			}
		case 3:
			err = r.skip(1, "primitive")
		case 4:
			err = r.skip(1, "primitive")
			push = []uint8{taskAnnots}
		case 5:
			err = r.skip(1, "primitive")
			push = []uint8{taskExpr}
		case 6:
			err = r.skip(1, "primitive")
			push = []uint8{taskAnnots, taskExpr}
		case 7:
			err = r.skip(1, "primitive")
			push = []uint8{taskExpr, taskExpr}
		case 8:
			err = r.skip(1, "primitive")
			push = []uint8{taskAnnots, taskExpr, taskExpr}
		case 9:
			if err = r.skip(1, "primitive"); err == nil {
				var end int
				if end, err = r.list("arguments"); err == nil {
					stack = append(stack, michelineTask{kind: taskAnnots}, michelineTask{kind: taskList, end: end})
				}
			}
		case 10:
			err = r.skipDyn("bytes")
		default:
			return r.unknownTag("expression", tag, at)
		}
		if err != nil {
			return err
		}
		for _, k := range push {
			stack = append(stack, michelineTask{kind: k})
		}
	}
	return nil
}

// list reads the 4-byte length of a list of expressions and returns the
// offset where the list ends; the expressions themselves are left to read.
func (r *reader) list(field string) (int, error) {
	at := r.off
	s, err := r.take(4, field+" length")
	if err != nil {
		return 0, err
	}
	n := int(uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3]))
	if n < 0 || n > r.remaining() {
		r.off = at
		return 0, r.errf("%s at offset %d declares %d bytes but only %d follow", r.where(field), at, uint32(n), r.remaining()-4)
	}
	return r.off + n, nil
}
