package api

import (
	"errors"
	"net/http"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// catalogView is an instance's whole node catalogue as the API shows it.
type catalogView struct {
	InstanceID  string `json:"instanceId"`
	Hash        string `json:"hash"`
	NodeClasses int    `json:"nodeClasses"`
	// Models lists the files the loader nodes offer, by kind (checkpoints,
	// loras, vaes, diffusionModels, textEncoders, controlNets, upscaleModels).
	Models map[string][]string `json:"models"`
	// Classes are the node classes with their inputs and combo options.
	Classes map[string]*catalog.Class `json:"classes"`
}

// getCatalog is GET /api/instances/{id}/catalog.
func (s *Server) getCatalog(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	c, hash, err := s.deps.Fleet.Catalog(r.Context(), id)
	if err != nil {
		return instanceErr(err, id)
	}
	if c == nil {
		return errorf(http.StatusNotFound, "catalog_unknown",
			"The node catalogue of %s has not been read yet: it is read when the instance comes up, or with POST /api/instances/%s/refresh-catalog.", id, id)
	}
	return writeJSON(w, catalogView{InstanceID: id, Hash: hash, NodeClasses: len(c.Classes), Models: c.Models(), Classes: c.Classes})
}

// refreshCatalog is POST /api/instances/{id}/refresh-catalog: read the
// instance's /object_info now (after installing models or custom nodes)
// and answer the instance with its new catalogue summary.
func (s *Server) refreshCatalog(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, ok := s.deps.Fleet.Lookup(id); !ok {
		return instanceErr(store.ErrNotFound, id)
	}
	if _, err := s.deps.RefreshCatalog(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
			return err
		}
		s.log.WarnContext(r.Context(), "refresh catalog failed", "instance_id", id, "err", err)
		return errorf(http.StatusBadGateway, "catalog_unreadable",
			"Could not read the node catalogue of %s: GET /object_info failed or was not a catalogue. Is the instance up?", id)
	}
	v, err := s.deps.Fleet.View(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, v)
}
