package fleet

import (
	"math/rand/v2"

	"scenepay/terminals"
)

// The town around the population: bus routes (the gateway's demo fare
// table, core.DefaultTransit), card profiles and patients. Profiles are
// drawn from their own random stream so that adding them left the
// population of a given seed (terminals, accounts, balances) unchanged.

// RouteSpec is one bus route as the readers know it. Money in fen.
type RouteSpec struct {
	ID       string
	Distance bool     // distance route: tap_in holds MaxFare, tap_out captures the zone fare
	Stops    []string // in order; empty on a flat route
	// MaxFare is the most one journey can cost: the flat fare, or the
	// distance route's hold (also the fare of an incomplete journey). It
	// bounds what an unanswered tap may have cost.
	MaxFare int64
}

// DefaultRoutes mirrors the gateway's DefaultTransit: B1 flat 2 CNY; D1 over
// stops S1..S4, 6 CNY end to end.
var DefaultRoutes = []RouteSpec{
	{ID: "B1", MaxFare: 200},
	{ID: "D1", Distance: true, Stops: []string{"S1", "S2", "S3", "S4"}, MaxFare: 600},
}

// Card profiles of county cards.
const (
	ProfileAdult   = "adult"
	ProfileSenior  = "senior"
	ProfileStudent = "student"
)

// Patient is a hospital patient: a registration number and the instrument
// the kiosk charges (a bank token or an e-CNY wallet, as Pick draws).
type Patient struct {
	ID  string
	Acc int // index into Population.Accounts
}

// Town is the population's profiles, patients and routes.
type Town struct {
	Routes   []RouteSpec
	Profiles map[int]string // county account index -> profile
	Patients []Patient
}

// patientsMax bounds the patients a town registers.
const patientsMax = 10_000

// NewTown draws profiles (70% adult, 20% senior, 10% student) and one
// patient per bank or e-CNY account (up to patientsMax) from the seed.
func (p *Population) NewTown() Town {
	rng := rand.New(rand.NewPCG(p.Seed, 0x70e4))
	t := Town{Routes: DefaultRoutes, Profiles: map[int]string{}}
	for _, i := range append([]int{p.LowCounty}, p.County...) {
		switch n := rng.IntN(10); {
		case n < 7:
			t.Profiles[i] = ProfileAdult
		case n < 9:
			t.Profiles[i] = ProfileSenior
		default:
			t.Profiles[i] = ProfileStudent
		}
	}
	for _, i := range append(append([]int(nil), p.Bank...), p.ECNY...) {
		if len(t.Patients) >= patientsMax {
			break
		}
		t.Patients = append(t.Patients, Patient{ID: "P" + p.Accounts[i].Inst.ID[len(p.Accounts[i].Inst.ID)-6:], Acc: i})
	}
	return t
}

// Riders returns the accounts that ride buses: county cards and e-CNY wallets.
func (p *Population) Riders() []terminals.Instrument {
	out := make([]terminals.Instrument, 0, len(p.County)+len(p.ECNY))
	for _, i := range p.County {
		out = append(out, p.Accounts[i].Inst)
	}
	for _, i := range p.ECNY {
		out = append(out, p.Accounts[i].Inst)
	}
	return out
}
