// Command local-provisioner gives testenv's single node dynamic volumes: it
// keeps a StorageClass (the default one), answers every pending claim of
// that class with a `local` PersistentVolume in a directory of its own under
// --root, pinned to the node, grows a volume when its claim asks for more
// (the directory has no size of its own, so growing is only bookkeeping, as
// a CSI driver's resize would report it), and removes the directory and the
// volume once a claim is deleted (reclaim policy Delete).
//
// It polls the API server instead of watching: a test node has a handful of
// claims, and a poll loop has no state to lose.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const provisionerName = "strata.dev/testenv-local"

type provisioner struct {
	client       kubernetes.Interface
	node         string
	storageClass string
	root         string
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of a user that may manage volumes and claims")
	node := flag.String("node", "", "the node the volumes live on")
	storageClass := flag.String("storage-class", "strata-local", "the StorageClass to provision (made the default)")
	root := flag.String("root", "", "directory holding one directory per volume")
	interval := flag.Duration("interval", 500*time.Millisecond, "how often claims and volumes are read")
	flag.Parse()
	if *kubeconfig == "" || *node == "" || *root == "" {
		fmt.Fprintln(os.Stderr, "local-provisioner: --kubeconfig, --node and --root are required")
		os.Exit(2)
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("local-provisioner: %v", err)
	}
	p := &provisioner{
		client:       kubernetes.NewForConfigOrDie(config),
		node:         *node,
		storageClass: *storageClass,
		root:         *root,
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := p.ensureStorageClass(ctx); err != nil {
		log.Fatalf("local-provisioner: StorageClass %s: %v", p.storageClass, err)
	}
	log.Printf("local-provisioner: provisioning StorageClass %s on node %s under %s", p.storageClass, p.node, p.root)
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	for {
		if err := p.pass(ctx); err != nil && ctx.Err() == nil {
			log.Printf("local-provisioner: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (p *provisioner) ensureStorageClass(ctx context.Context) error {
	expand := true
	reclaim := corev1.PersistentVolumeReclaimDelete
	binding := storagev1.VolumeBindingImmediate
	class := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        p.storageClass,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:          provisionerName,
		ReclaimPolicy:        &reclaim,
		VolumeBindingMode:    &binding,
		AllowVolumeExpansion: &expand,
	}
	_, err := p.client.StorageV1().StorageClasses().Create(ctx, class, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// pass provisions pending claims, grows volumes, and deletes released ones.
func (p *provisioner) pass(ctx context.Context) error {
	claims, err := p.client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing claims: %w", err)
	}
	for i := range claims.Items {
		claim := &claims.Items[i]
		if claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName != p.storageClass {
			continue
		}
		switch {
		case claim.Status.Phase == corev1.ClaimPending && claim.Spec.VolumeName == "":
			if err := p.provision(ctx, claim); err != nil {
				log.Printf("local-provisioner: claim %s/%s: %v", claim.Namespace, claim.Name, err)
			}
		case claim.Status.Phase == corev1.ClaimBound:
			if err := p.grow(ctx, claim); err != nil {
				log.Printf("local-provisioner: growing claim %s/%s: %v", claim.Namespace, claim.Name, err)
			}
		}
	}
	volumes, err := p.client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing volumes: %w", err)
	}
	for i := range volumes.Items {
		volume := &volumes.Items[i]
		if volume.Annotations["pv.kubernetes.io/provisioned-by"] != provisionerName {
			continue
		}
		released := volume.Status.Phase == corev1.VolumeReleased || volume.Status.Phase == corev1.VolumeFailed
		if released && volume.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
			if err := p.remove(ctx, volume); err != nil {
				log.Printf("local-provisioner: volume %s: %v", volume.Name, err)
			}
		}
	}
	return nil
}

func (p *provisioner) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim) error {
	name := "pvc-" + string(claim.UID)
	path := filepath.Join(p.root, name)
	// The kubelet gives the pod's fsGroup ownership of a local volume; the
	// directory itself only has to exist.
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	volume := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": provisionerName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              p.storageClass,
			VolumeMode:                    claim.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind:       "PersistentVolumeClaim",
				APIVersion: "v1",
				Namespace:  claim.Namespace,
				Name:       claim.Name,
				UID:        claim.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: path},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{
						Key:      "kubernetes.io/hostname",
						Operator: corev1.NodeSelectorOpIn,
						Values:   []string{p.node},
					}},
				}},
			}},
		},
	}
	_, err := p.client.CoreV1().PersistentVolumes().Create(ctx, volume, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		log.Printf("local-provisioner: volume %s (%s) for claim %s/%s", name, size.String(), claim.Namespace, claim.Name)
	}
	return err
}

// grow records a larger size on the volume and the claim when the claim
// asks for more than it has.
func (p *provisioner) grow(ctx context.Context, claim *corev1.PersistentVolumeClaim) error {
	want := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	have, ok := claim.Status.Capacity[corev1.ResourceStorage]
	if !ok || want.Cmp(have) <= 0 || claim.Spec.VolumeName == "" {
		return nil
	}
	volume, err := p.client.CoreV1().PersistentVolumes().Get(ctx, claim.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if volume.Annotations["pv.kubernetes.io/provisioned-by"] != provisionerName {
		return nil
	}
	volume.Spec.Capacity[corev1.ResourceStorage] = want
	if _, err := p.client.CoreV1().PersistentVolumes().Update(ctx, volume, metav1.UpdateOptions{}); err != nil {
		return err
	}
	claim.Status.Capacity[corev1.ResourceStorage] = want
	claim.Status.AllocatedResources = corev1.ResourceList{corev1.ResourceStorage: want}
	claim.Status.Conditions = nil
	if _, err := p.client.CoreV1().PersistentVolumeClaims(claim.Namespace).UpdateStatus(ctx, claim, metav1.UpdateOptions{}); err != nil {
		return err
	}
	log.Printf("local-provisioner: claim %s/%s grew to %s", claim.Namespace, claim.Name, want.String())
	return nil
}

func (p *provisioner) remove(ctx context.Context, volume *corev1.PersistentVolume) error {
	if volume.Spec.Local != nil {
		path := filepath.Clean(volume.Spec.Local.Path)
		if filepath.Dir(path) != filepath.Clean(p.root) {
			return fmt.Errorf("refusing to remove %s: not under %s", path, p.root)
		}
		if err := os.RemoveAll(path); err != nil {
			return err
		}
	}
	err := p.client.CoreV1().PersistentVolumes().Delete(ctx, volume.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		log.Printf("local-provisioner: volume %s deleted", volume.Name)
	}
	return err
}
