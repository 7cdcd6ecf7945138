package merchant

// The operator's key command, for the settlement binary to expose as
// "settlement keys ...": flags are parsed here so that every binary that
// mounts the merchant API offers the same command.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// KeysUsage describes the key command.
const KeysUsage = `keys issue -merchant ID [-label TEXT]   issue a key (printed once; store it now)
keys revoke -id KEYID                    revoke a key at once (its sessions end too)
keys list -merchant ID                   list a merchant's keys (ids, never secrets)`

// RunKeysCommand runs one key command against k, writing to out.
func RunKeysCommand(ctx context.Context, k *Keys, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage:\n" + KeysUsage)
	}
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	merchant := fs.String("merchant", "", "merchant id")
	label := fs.String("label", "", "operator's note on the key")
	id := fs.String("id", "", "key id")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%v\nusage:\n%s", err, KeysUsage)
	}
	if fs.NArg() != 0 {
		return errors.New("unexpected arguments; usage:\n" + KeysUsage)
	}
	switch args[0] {
	case "issue":
		is, err := k.Issue(ctx, *merchant, *label)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "merchant %s key id %s\nkey (shown once): %s\n", is.Merchant, is.ID, is.Key)
		return nil
	case "revoke":
		if err := k.Revoke(ctx, *id); err != nil {
			return err
		}
		fmt.Fprintf(out, "key %s revoked\n", *id)
		return nil
	case "list":
		if *merchant == "" {
			return errors.New("keys list needs -merchant")
		}
		ks, err := k.List(ctx, *merchant)
		if err != nil {
			return err
		}
		for _, ki := range ks {
			state := "active"
			if ki.Revoked {
				state = "revoked"
			}
			fmt.Fprintf(out, "%s\t%s\t%s\t%q\n", ki.ID, ki.CreatedAt.Format(time.RFC3339), state, ki.Label)
		}
		return nil
	}
	return errors.New("unknown keys command " + args[0] + "; usage:\n" + KeysUsage)
}
