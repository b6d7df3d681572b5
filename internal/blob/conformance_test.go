package blob_test

import (
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/blob/blobtest"
	"github.com/comfyfleet/comfyfleet/internal/blob/s3test"
)

// large crosses the S3 store's part size, so its multipart path is tested.
const large = 17 << 20

func TestDiskConformance(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) blob.Store {
		d, err := blob.NewDisk(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}, blobtest.Options{Large: large})
}

func TestS3Conformance(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	t.Logf("SeaweedFS answered S3 requests %s after start", srv.StartTime)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		return srv.Store(t, "fleet/files/")
	}, blobtest.Options{Large: large})
}
