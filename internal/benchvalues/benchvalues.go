// Package benchvalues makes the record values the throughput benchmarks run
// on (worker's BenchmarkThroughput, worker/sink's log sink benchmarks), so
// both measure the same data:
//
//   - random: 100 random bytes, what a binary payload (Avro, Protobuf,
//     compressed or encrypted data) looks like: not UTF-8;
//   - json: JSON documents of about 100 bytes whose strings hold quotes,
//     backslashes, newlines, tabs and non-ASCII text (accents, CJK, emoji);
//   - ascii: 100 bytes of plain ASCII text, nothing to escape.
package benchvalues

import (
	"encoding/json"
	"math/rand/v2"
)

// Kinds are the value kinds, in the order benchmarks report them.
var Kinds = []string{"random", "json", "ascii"}

// Make returns n values of a kind, the same on every call.
func Make(kind string, n int) [][]byte {
	rng := rand.New(rand.NewPCG(13, uint64(len(kind))))
	names := []string{"Zoë Ångström", "José Ñúñez", "Søren Kierkegård", "李小龙", "Анна Каренина", `Max "the Hammer" Müller`, "Åsa Öberg"}
	cities := []string{"Zürich", "São Paulo", "Kraków", "東京", "Montréal", `C:\Orders\In`, "Αθήνα"}
	notes := []string{"ring twice\nthen wait", "fragile\t⚠ glass", `say "hi" 😀`, "", "leave at door", "2nd floor\r\nback", "¡gracias!"}
	const text = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_/()"
	values := make([][]byte, n)
	for i := range values {
		switch kind {
		case "random":
			v := make([]byte, 100)
			for j := range v {
				v[j] = byte(rng.Uint32())
			}
			values[i] = v
		case "json":
			v, err := json.Marshal(struct {
				ID       int     `json:"id"`
				Customer string  `json:"customer"`
				City     string  `json:"city"`
				Note     string  `json:"note"`
				Total    float64 `json:"total"`
			}{i, names[rng.IntN(len(names))], cities[rng.IntN(len(cities))], notes[rng.IntN(len(notes))], float64(rng.IntN(100_000)) / 100})
			if err != nil {
				panic(err)
			}
			values[i] = v
		case "ascii":
			v := make([]byte, 100)
			for j := range v {
				v[j] = text[rng.IntN(len(text))]
			}
			values[i] = v
		default:
			panic("unknown value kind " + kind)
		}
	}
	return values
}
